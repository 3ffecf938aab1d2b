"""Domain logic and integrations: everything that talks to the database, Redis or the outside world."""
