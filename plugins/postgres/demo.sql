-- demo.sql - the sample data of postgres.sandbox (sample_data: demo).
--
-- A small schema in the style Prisma generates (quoted PascalCase tables,
-- camelCase columns, an enum, JSONB, a join table "_PostToTag", a
-- "_prisma_migrations" table), with foreign keys and some thousands of
-- rows. The data is deterministic (no random()): two sandboxes hold the
-- same rows, so dumps and checksums can be compared across runs.
-- Embedded into the plugin at build time (embed_sql.py).

CREATE TYPE "Role" AS ENUM ('USER', 'EDITOR', 'ADMIN');
CREATE TYPE "OrderStatus" AS ENUM ('PENDING', 'PAID', 'SHIPPED', 'CANCELLED');

CREATE TABLE "User" (
    "id"        SERIAL PRIMARY KEY,
    "email"     TEXT NOT NULL,
    "name"      TEXT,
    "role"      "Role" NOT NULL DEFAULT 'USER',
    "profile"   JSONB NOT NULL DEFAULT '{}',
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL
);
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");

CREATE TABLE "Post" (
    "id"        SERIAL PRIMARY KEY,
    "authorId"  INTEGER NOT NULL,
    "title"     TEXT NOT NULL,
    "body"      TEXT NOT NULL,
    "published" BOOLEAN NOT NULL DEFAULT false,
    "rating"    NUMERIC(3, 2),
    "metadata"  JSONB,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId")
        REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "Post_authorId_idx" ON "Post"("authorId");

CREATE TABLE "Comment" (
    "id"        SERIAL PRIMARY KEY,
    "postId"    INTEGER NOT NULL,
    "authorId"  INTEGER,
    "body"      TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Comment_postId_fkey" FOREIGN KEY ("postId")
        REFERENCES "Post"("id") ON DELETE CASCADE,
    CONSTRAINT "Comment_authorId_fkey" FOREIGN KEY ("authorId")
        REFERENCES "User"("id") ON DELETE SET NULL
);
CREATE INDEX "Comment_postId_idx" ON "Comment"("postId");

CREATE TABLE "Tag" (
    "id"   SERIAL PRIMARY KEY,
    "name" TEXT NOT NULL UNIQUE
);

CREATE TABLE "_PostToTag" (
    "A" INTEGER NOT NULL REFERENCES "Post"("id") ON DELETE CASCADE,
    "B" INTEGER NOT NULL REFERENCES "Tag"("id") ON DELETE CASCADE
);
CREATE UNIQUE INDEX "_PostToTag_AB_unique" ON "_PostToTag"("A", "B");
CREATE INDEX "_PostToTag_B_index" ON "_PostToTag"("B");

CREATE TABLE "Order" (
    "id"        BIGSERIAL PRIMARY KEY,
    "userId"    INTEGER NOT NULL REFERENCES "User"("id"),
    "status"    "OrderStatus" NOT NULL DEFAULT 'PENDING',
    "total"     NUMERIC(12, 2) NOT NULL,
    "items"     JSONB NOT NULL,
    "placedAt"  TIMESTAMPTZ(3) NOT NULL
);
CREATE INDEX "Order_userId_idx" ON "Order"("userId");

CREATE TABLE "AuditLog" (
    "id"      BIGSERIAL PRIMARY KEY,
    "userId"  INTEGER REFERENCES "User"("id") ON DELETE SET NULL,
    "action"  TEXT NOT NULL,
    "payload" JSONB,
    "at"      TIMESTAMPTZ(3) NOT NULL
);

CREATE TABLE "_prisma_migrations" (
    "id"                  VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"            VARCHAR(64) NOT NULL,
    "finished_at"         TIMESTAMPTZ,
    "migration_name"      VARCHAR(255) NOT NULL,
    "logs"                TEXT,
    "rolled_back_at"      TIMESTAMPTZ,
    "started_at"          TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
);

-- ---- data ------------------------------------------------------------------

INSERT INTO "User" ("email", "name", "role", "profile", "createdAt", "updatedAt")
SELECT 'user' || i || '@example.com',
       'User ' || i,
       (CASE WHEN i % 50 = 0 THEN 'ADMIN' WHEN i % 10 = 0 THEN 'EDITOR' ELSE 'USER' END)::"Role",
       jsonb_build_object('locale', (ARRAY['en', 'de', 'fr', 'ja'])[1 + i % 4],
                          'newsletter', i % 3 = 0,
                          'tags', jsonb_build_array('t' || (i % 7), 't' || (i % 11))),
       timestamptz '2024-01-01 00:00:00+00' + i * interval '37 minutes',
       timestamptz '2024-01-01 00:00:00+00' + i * interval '41 minutes'
FROM generate_series(1, 2000) AS i;

INSERT INTO "Post" ("authorId", "title", "body", "published", "rating", "metadata", "createdAt")
SELECT 1 + (i * 7) % 2000,
       'Post ' || i || ': ' || md5(i::text),
       repeat('Lorem ipsum dolor sit amet ' || md5((i * 3)::text) || '. ', 1 + i % 5),
       i % 4 <> 0,
       CASE WHEN i % 9 = 0 THEN NULL ELSE round(((i % 500) / 100.0)::numeric, 2) END,
       CASE WHEN i % 5 = 0 THEN NULL
            ELSE jsonb_build_object('words', 20 + i % 300, 'lang', 'en', 'draft', i % 4 = 0) END,
       timestamptz '2024-02-01 00:00:00+00' + i * interval '13 minutes'
FROM generate_series(1, 5000) AS i;

INSERT INTO "Comment" ("postId", "authorId", "body", "createdAt")
SELECT 1 + (i * 13) % 5000,
       CASE WHEN i % 17 = 0 THEN NULL ELSE 1 + (i * 3) % 2000 END,
       'Comment ' || i || ' ' || md5((i * 5)::text),
       timestamptz '2024-03-01 00:00:00+00' + i * interval '5 minutes'
FROM generate_series(1, 8000) AS i;

INSERT INTO "Tag" ("name")
SELECT 'tag-' || i FROM generate_series(1, 25) AS i;

INSERT INTO "_PostToTag" ("A", "B")
SELECT DISTINCT 1 + (i * 11) % 5000, 1 + (i * 7) % 25
FROM generate_series(1, 6000) AS i;

INSERT INTO "Order" ("userId", "status", "total", "items", "placedAt")
SELECT 1 + (i * 19) % 2000,
       (ARRAY['PENDING', 'PAID', 'SHIPPED', 'CANCELLED'])[1 + i % 4]::"OrderStatus",
       round((5 + (i % 997) * 1.37)::numeric, 2),
       jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (i % 300), 'qty', 1 + i % 3)),
       timestamptz '2024-04-01 00:00:00+00' + i * interval '11 minutes'
FROM generate_series(1, 3000) AS i;

INSERT INTO "AuditLog" ("userId", "action", "payload", "at")
SELECT CASE WHEN i % 23 = 0 THEN NULL ELSE 1 + i % 2000 END,
       (ARRAY['login', 'logout', 'update_profile', 'place_order'])[1 + i % 4],
       jsonb_build_object('ip', '10.0.' || (i % 256) || '.' || (i * 7 % 256)),
       timestamptz '2024-05-01 00:00:00+00' + i * interval '3 minutes'
FROM generate_series(1, 4000) AS i;

INSERT INTO "_prisma_migrations" ("id", "checksum", "finished_at", "migration_name", "started_at", "applied_steps_count")
VALUES ('00000000-0000-4000-8000-000000000001',
        'f1b7d1c5c0e0e3e6d9a1c8d0b1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0',
        timestamptz '2024-01-01 00:00:01+00', '20240101000000_init',
        timestamptz '2024-01-01 00:00:00+00', 1);

ANALYZE;
