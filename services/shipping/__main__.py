from services.shipping.app import ShippingSettings, bootstrap
from shared.serve import serve

settings = ShippingSettings()
serve(lambda: bootstrap(settings), settings, default_port=8003)
