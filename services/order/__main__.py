from services.order.app import OrderSettings, bootstrap
from shared.serve import serve

settings = OrderSettings()
serve(lambda: bootstrap(settings), settings, default_port=8000)
