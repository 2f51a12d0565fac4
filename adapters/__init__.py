"""Adapters: how steps reach external services (imported as ``saga.adapters``)."""
