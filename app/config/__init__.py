"""The configuration: its schema and cross-field rules, its summary, and reloading it
while serving."""
