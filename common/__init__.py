"""common: the bottom layer every part shares; imports nothing else of dctq.

errors (DctqError and one subclass per domain), files (atomic writes), config (the base of every saved
config: strict to_dict / from_dict, resumable-field diffs), devices (the one --device resolver), seeding
(the one seed mixer), lazy (package re-exports resolved on first use).
"""
