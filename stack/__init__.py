"""The app shell: the `pawstream` command, the process supervisor, the local-stack planner and the demo.

It sits above every service (it launches them all), so it may import any of them; nothing imports it.
Kept import-free: ``stack.launch`` runs before every child and must start fast.
"""
