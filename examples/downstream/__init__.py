"""A neighbouring team's service and its tests against a real shopflow, through nothing
but shopflow's pytest plugin (its fixtures) and its public client and contracts."""
