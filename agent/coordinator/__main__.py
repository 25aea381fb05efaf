"""`python -m agent.coordinator ...`: the coordinator CLI without the main agent CLI."""

from agent.coordinator.cli import app

if __name__ == "__main__":
    app(prog_name="chaos-agent coordinator")
