"""What the pages call each job status: the picture frame's text and the gallery's filter."""

from __future__ import annotations

from webapp.models import Job, JobStatus

STATUS_LABELS: dict[JobStatus, str] = {
    JobStatus.PENDING: "Waiting in queue",
    JobStatus.PROCESSING: "Generating…",
    JobStatus.RETRYING: "Retrying…",
    JobStatus.COMPLETED: "Completed",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
}

# The gallery's status filter offers every unfinished job at once, then each way of ending.
FILTER_OPTIONS: dict[str, str] = {
    "active": "In progress",
    **{status.value: label for status, label in STATUS_LABELS.items() if status.terminal},
}


def placeholder_label(job: Job, *, progress: bool = False) -> str:
    """What a job's picture frame says while it shows no picture (with the percentage, if asked)."""
    if job.status == JobStatus.COMPLETED:
        return "No image"
    if progress and job.status == JobStatus.PROCESSING:
        return f"{STATUS_LABELS[job.status]} {round(job.progress)}%"
    return STATUS_LABELS[job.status]
