"""Realistic, messy, siloed demo customer data, with the ground truth of who is who.

One seeded population of people (households, addresses, phones, emails, tastes, loyalty, contentment)
is seen through five source systems, each in its own native form and column names:

==========================  =====================================================================
``crm_contacts.csv``        CRM contacts export (``contact_id`` CRM-000123, free-text country and
                            gender, ``loyalty_card``)
``crm_consents.csv``        CRM newsletter consent history: status ``granted`` / ``withdrawn``
                            (staging maps granted -> subscribed, withdrawn -> unsubscribed)
``shop.sqlite``             shop database: ``customers``, ``orders``, ``order_items``
``support_tickets.jsonl``   support desk tickets; ``customer_ref`` holds shop customer ids
``email_subscribers.csv``   email tool subscribers per list, and campaign events in
``email_events.csv``        (sent, open, click, unsubscribe, bounce)
``survey_responses.csv``    NPS answers; ``customer_ref`` holds shop customer ids
``ground_truth.csv``        source, entity, source_record_id, person_id for every customer record
``manifest.json``           parameters and row counts; written last, so it marks a complete set
==========================  =====================================================================

Behaviour has signal: shop purchases follow BG/NBD (personal Poisson rate while alive, dropout after
each purchase, heavy-tailed), so recent activity predicts future activity; baskets follow category
complements (camera -> lens, memory card; coffee machine -> beans), so cross-sell lift is real; a
campaign click raises the chance of a purchase within a week; NPS and CSAT follow a latent
contentment that also lowers dropout, and drop after refunds and slow support.

Messiness, with default rates (all in :class:`Messiness`, shares of a source's records):

- the same person in several systems under unrelated ids; email-only records in support, email and
  surveys (ground truth keys them ``email:<address trimmed, lower case>``): nearly all from an address
  one of the person's CRM contacts or shop accounts carries, about 1% from a mailbox no other system
  knows, and about 1% from a family address both partners' records carry, which the ground truth gives
  to its owner, the household's first member (``unknown_reference_email``, ``family_reference_email``)
- emails in random case (8%) and with surrounding whitespace (3%); second mailboxes and work emails
- one-edit name typos (3% in the shop, 40% of CRM duplicates); nicknames (Alex for Alexander: 15% of
  names that have one, in the shop)
- forms filled in carelessly, in the shop and the CRM: given name and surname the wrong way round
  (2%), given name left empty (2%), street left empty (3%), city left empty (3%), a postcode digit one
  off (2%; never the first); in the CRM only: surnames misread from paper forms (2%: m/rn, d/cl, h/li,
  e/c, l/i), birth dates with one digit wrong (3%, still a valid date) or with day and month swapped
  (5% of those whose day could be a month). Several may hit one record
  (``name_swap``, ``given_name_dropped``, ``missing_street``, ``missing_city``, ``postcode_digit``,
  ``ocr_typo``, ``birth_date_digit``, ``birth_day_month_swap``)
- phone formats per country: +49 30 1234567, 030/1234567, 0049301234567, 0049 30 1234567,
  +49 (0)30 1234567, (030) 123 4567, (212) 555-0100, 1-212-555-0100, 06-12345678, 01 23 45 67 89, ...
- missing fields (phone 15-30%, birth date 45%, CRM email 5%, address 4%, CRM state 30%)
- moved addresses: 8% of shop accounts show the previous address; German streets abbreviated in the
  shop (Hauptstr. for Hauptstraße, 25%)
- households: shared address, a shared landline (35% of members give it), shared family email (25%
  of multi-person households, used by two members), never a shared first name or birth date
- duplicates inside one system: 3% of CRM contacts entered twice with variations; 1% of shop
  customers with a second account (another email) that takes half their later orders
- country spellings (DE, Deutschland, Germany, DEU, D, UK, USA, Schweiz, ...) and gender spellings
  (F, female, Female, f, w, M, male, Male, m, d, diverse, X, blank) in the CRM; loyalty cards in lower
  case on 5% of shop accounts; ZIP codes with leading zeros (01067 Dresden, 02108 Boston)
- broken values, at least one each (0.025% per kind): invalid emails (john@@example.com,
  anna@web), phone "12", birth date 1850-01-01, CRM contacts and shop orders dated in the future,
  orders in currency XYZ, negative totals on completed orders
- placeholders in a few CRM records (0.05%, at least two each): test@test.com, n/a, 0000000000
- currencies EUR, USD, GBP, CHF; refunds as status ``refunded`` and as credit notes (negative total,
  negative line quantity)

Every timestamp is on or before ``end_date`` except the deliberately future ones (CRM ``created_at``
and ``updated_at``, shop order ``created_at``).
"""
