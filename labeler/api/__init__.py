"""The REST API under /api/v1 (floor 4, beside the Gradio app): labelling, data and training for programs, with
personal API tokens. `rest_app(deps)` builds it; `labeler.ui.app.launch` mounts it on the app's server."""
