from services.payment.app import PaymentSettings, bootstrap
from shared.serve import serve

settings = PaymentSettings()
serve(lambda: bootstrap(settings), settings, default_port=8001)
