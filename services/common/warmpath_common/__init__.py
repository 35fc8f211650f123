"""What all three Warmpath services share: errors, gRPC plumbing, config loading."""
