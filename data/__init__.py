"""Package data: the domain tables (labels, SLA policy, reply templates, keyword rules, routing costs, …) and the
committed labelled references. Read through ``helpdesk_triage.policy.data_files.data_file(name)``."""
