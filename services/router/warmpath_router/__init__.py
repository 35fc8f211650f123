"""router: decides where each request goes, explains why, and relays the answer."""
