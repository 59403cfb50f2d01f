"""This project's Prefect flows: the deployment entrypoints of prefect.yaml."""
