-- Installation-wide operations (backups) are no organization's: a token
-- issued by the CLI with --operator may see them, whatever its role. The
-- API never issues such a token.
ALTER TABLE api_tokens ADD COLUMN operator boolean NOT NULL DEFAULT false;
