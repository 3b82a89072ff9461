"""The Accounts page (app/ui/accounts.py)."""

from app.ui.accounts import render

render()
