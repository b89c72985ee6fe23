"""Who may talk to the server and how much it may cost: token, Origin and Host checks, security headers, redacted
logs, the image decoding budget.
"""
