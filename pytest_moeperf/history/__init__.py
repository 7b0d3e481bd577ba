"""Change points over the stored runs (history of a metric across commits)."""
