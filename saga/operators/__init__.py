"""What an operator does to a saga: retry, cancel, skip, fork, act on many, check a deploy."""
