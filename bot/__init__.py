"""The bot's services, with no Discord type in them but the client itself
(bot/client.py): the store (all SQL), personas, jobs, candidates and votes,
posting, the scheduler and the publishers. A second chat frontend could call
the same services. Nothing under bot/ imports TensorFlow or the worker."""
