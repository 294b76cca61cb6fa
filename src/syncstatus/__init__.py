"""syncstatus: the lifecycle status of data connections to third-party apps."""
