"""HTTP layer, configuration and command line of event-postback."""
