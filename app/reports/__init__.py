"""Reports: clicks, conversions and money over time, by campaign, source and event."""
