-- perigee control plane schema, version 6: user e-mail addresses (rendered into provider
-- templates such as service-account annotations: {{.UserEmail}}).
ALTER TABLE users ADD COLUMN email TEXT;
