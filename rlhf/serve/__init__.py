"""Background work of a running app: the job runner, the pre-generation worker and its process, the models the
app generates with, the monitor of background CPU, and how long a job will take."""
