"""Secret fields: keys, sealing values in the log, masking them out of every text."""
