"""Responses: shaping the HTTP answer of a sync call with DFF.RESP

A sync call's body is the function's bare return value (dict/list as JSON). ``DFF.RESP``
sets the status code, content type (full MIME type or DataFlux Func's short names ``json``,
``html``, ``text``, ``xml``, ``csv``, …) and headers. ``DFF.REDIRECT`` answers 302.
"""


@DFF.API("HTML page")
def page(name="world"):
    return DFF.RESP(f"<h1>Hello, {name}!</h1>", content_type="html")


@DFF.API("Plain text with a header")
def text(name="world"):
    return DFF.RESP(f"hello {name}\n", content_type="text", headers={"X-Example": "yes"})


@DFF.API("Created")
def created(item="thing"):
    """A JSON body with status 201."""
    return DFF.RESP({"created": item}, status_code=201)


@DFF.API("CSV download")
def csv(rows=3):
    lines = ["n,square"] + [f"{n},{n * n}" for n in range(int(rows))]
    return DFF.RESP("\n".join(lines) + "\n", content_type="csv",
                    headers={"Content-Disposition": "attachment; filename=squares.csv"})


@DFF.API("Redirect")
def go(to="https://example.com/"):
    return DFF.REDIRECT(to)
