"""Several GPUs: assignment to xdist workers, merging, the torchrun tensor-parallel benchmark."""
