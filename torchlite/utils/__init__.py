"""Small utilities shared across torchlite (no torch-operator code here)."""
