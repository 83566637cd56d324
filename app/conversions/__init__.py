"""Conversion lifecycle: statuses, the changes an operator or a buyer's system makes, and
the postbacks and audit trail each change leaves."""
