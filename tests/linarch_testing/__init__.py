"""Helpers shared by the tests: fla oracles, fakes, hand-written mixers, small program builders.

They live in one package with a project-specific name because pytest puts tests/ first on
sys.path: a helper module named like a dependency (`oracles`, `lang_support` ...) would shadow it.
"""
