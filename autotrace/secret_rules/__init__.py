"""Token formats: gitleaks' published rule set (data, MIT) and the rules derived from it."""
