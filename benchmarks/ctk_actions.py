"""A Chaos Toolkit python action for the one-off kill comparison (docker SDK, one call)."""

from __future__ import annotations


def kill(container: str) -> None:
    import docker

    client = docker.APIClient(base_url="unix:///var/run/docker.sock")
    client.kill(container, signal="SIGKILL")
    client.close()
