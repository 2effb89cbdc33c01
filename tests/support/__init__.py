"""Test support: sample events, handler loading and a moto-provisioned stack."""
