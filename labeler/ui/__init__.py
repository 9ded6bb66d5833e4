"""The Gradio UI: one builder per tab, composed by `build_ui`."""
