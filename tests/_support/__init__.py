"""Helpers shared by the test areas, imported one way: ``from tests._support.<module> import ...``.

``tests`` is a package (every test folder has an ``__init__.py``), so pytest puts the repository root on
``sys.path`` and these imports need no path tricks.
"""
