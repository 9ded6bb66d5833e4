"""The labeling side of rankloop: the preference store, users, assignment, agreement, import/export, and the UI."""
