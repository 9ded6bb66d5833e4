"""The labeling side of rankloop, torch-free: the store (`store/`), what training records (`records/`), label maths
(`labels/`), files in and out (`io/`), the store's command line; the Gradio app sits above rlhf in `ui/`."""
