from services.inventory.app import service

service.run()
