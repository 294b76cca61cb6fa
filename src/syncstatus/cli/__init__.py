"""The `syncstatus` command and the demo it runs: parse arguments, wire, print."""
