-- perigee control plane schema, version 8: the STUN/TURN URLs each satellite reports, put in
-- connection tickets for clients entering through it (a JSON array of URLs).
ALTER TABLE satellites ADD COLUMN turn_urls TEXT;
