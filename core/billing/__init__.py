"""Billing: Stripe behind one wrapper, verified webhook events, subscription records.

``stripe_client`` talks to Stripe, ``events`` turns a signed webhook into a
``BillingEvent`` for the tenant workflow, ``service`` keeps the ``subscriptions``
rows and the billing-off mode, ``inbox`` dedupes webhook deliveries.
"""
