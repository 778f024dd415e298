"""CRM attributes given by several sources: where they disagree."""
