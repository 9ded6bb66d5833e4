"""Playground tab: type a prompt, get N completions from the loaded policy."""

from __future__ import annotations

import gradio as gr

from models.generation import GenerationBackend, SamplingParams


def _format(completions) -> str:
    parts = []
    for i, c in enumerate(completions, 1):
        parts.append(
            f"### Completion {i}\n\n{c.text}\n\n*{c.token_count} tokens, stopped by {c.finish_reason}*"
        )
    return "\n\n---\n\n".join(parts)


def build_playground_tab(backend: GenerationBackend) -> None:
    """A prompt box, sampling controls, and the completions rendered as Markdown."""
    with gr.Tab("Playground"):
        prompt = gr.Textbox(label="Prompt", lines=3, placeholder="Ask the current policy something")
        with gr.Row():
            n = gr.Slider(1, 8, value=2, step=1, label="Completions")
            max_new = gr.Slider(8, 512, value=96, step=8, label="Max new tokens")
            temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature (0 = greedy)")
        button = gr.Button("Generate", variant="primary")
        output = gr.Markdown(elem_id="playground-output")

        def run(text: str, n_value: float, max_value: float, temp: float) -> str:
            if not text.strip():
                raise gr.Error("Type a prompt first.")
            sampling = SamplingParams(max_new_tokens=int(max_value), temperature=float(temp))
            sets = backend.generate([[{"role": "user", "content": text}]], int(n_value), sampling)
            return _format(sets[0])

        button.click(run, [prompt, n, max_new, temperature], output)
        prompt.submit(run, [prompt, n, max_new, temperature], output)
