"""One adapter per protocol (SSH, DNS, SMTP). Each call has a timeout and each failure is
classified as transient (worth a retry) or permanent (retrying cannot help)."""
