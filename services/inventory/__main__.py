from services.inventory.app import InventorySettings, bootstrap
from shared.serve import serve

settings = InventorySettings()
serve(lambda: bootstrap(settings), settings, default_port=8002)
