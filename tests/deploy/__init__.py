"""Static checks of deploy/: what cannot run here (no Docker daemon, no cluster) is validated as files."""
