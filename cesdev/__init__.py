"""Development tooling: the local native stack and the rate provider simulator. Runtime code never imports it."""
