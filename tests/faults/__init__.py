"""The fault suite (issue 6): break things for real and check the records."""
