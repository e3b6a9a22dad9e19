"""SQL Server specifics of the extractor: the catalog query that discovers a table and the SELECT
that streams it.

Kept apart from the dialect-neutral path in `shared.extractor.source` because SQL Server is the
production source and deserves exact answers (``datetime2(7)``, ``nvarchar(max)``, computed and
rowversion columns) that SQLAlchemy's generic reflection does not give.
"""
