import json
import pytest
from local.apigw import http_event

pytestmark = pytest.mark.integration

def test_smoke(load_function, lambda_context, stack):
    app = load_function("CallbackFunction", CALLBACK_SECRETS="s3cret-current-value")
    event = http_event("POST", "/clay/callback", json.dumps({"email": "a@b.com", "icp_score": "85"}),
                       {"content-type": "application/json", "x-clay-signature": "s3cret-current-value"})
    r = app.lambda_handler(event, lambda_context)
    print(r)
    assert r["statusCode"] == 200
    r = app.lambda_handler(event, lambda_context)
    print(r)
    assert json.loads(r["body"])["duplicate"] is True
