"""The defaults of HUBSPOT_OWNED_PROPERTIES and HUBSPOT_NEW_CONTACT_VALUES: in a module of their own, so that
config.py (imported by every function) does not import the contact mapping (core/hubspot_contacts.py)."""

HUBSPOT_OWNED_PROPERTIES = "hs_lead_status,lifecyclestage,hubspot_owner_id"
HUBSPOT_NEW_CONTACT_VALUES = "hs_lead_status=NEW"
