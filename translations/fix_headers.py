"""Write each catalog's Plural-Forms explicitly (`python -m translations.fix_headers`, run by `make messages`).

Babel 2.18 writes `nplurals=1; plural=0;` for Turkish when a catalog is created, which would make
every Turkish plural entry a single form. Turkish needs two (`bir dakika` / `%(n)d dakika`): this
sets the header and gives every plural entry its forms (new ones empty, for the translator).
Idempotent: a catalog that is already right is not rewritten.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from babel.messages.pofile import read_po, write_po

from translations import CATALOG_DIR, CONSOLE_DOMAIN, DOMAIN, PLURAL_FORMS, catalog_path


def fix_headers(directory: Path = CATALOG_DIR) -> list[Path]:
    """The catalogs that were rewritten."""
    changed: list[Path] = []
    pairs = [(domain, locale, forms) for domain in (DOMAIN, CONSOLE_DOMAIN) for locale, forms in PLURAL_FORMS.items()]
    for domain, locale, plural_forms in pairs:
        path = catalog_path(locale, directory, domain)
        if not path.exists():
            continue
        before = path.read_bytes()
        catalog = read_po(BytesIO(before), locale=locale, domain=domain)
        catalog.mime_headers = [("Plural-Forms", plural_forms)]  # sets only this header
        after = BytesIO()
        write_po(after, catalog)  # the same defaults as `pybabel update`, so nothing else moves
        if after.getvalue() != before:
            path.write_bytes(after.getvalue())
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in fix_headers():
        print(f"fixed Plural-Forms in {path}")
